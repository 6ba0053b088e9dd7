package demo

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/ratemesh/ratemesh/httpapi"
	"github.com/ratemesh/ratemesh/httpapi/jwtauth"
)

// Tiers of the demo users, as carried in their token's "tier" claim.
const (
	TierFree  = "free"
	TierPaid  = "paid"
	TierAdmin = "admin"
)

// TokenTTL is how long a token from POST /login is valid.
const TokenTTL = time.Hour

// User is a demo account.
type User struct {
	Name     string
	Password string
	Role     string // "user" or "admin"
	Tier     string // TierFree, TierPaid or TierAdmin
}

// Users returns the demo accounts. Their passwords are public, as the
// demo's are meant to be typed by hand:
//
//	user   password    tier    GET /orders
//	free   free-demo   free    10 per minute
//	paid   paid-demo   paid    100 per minute
//	admin  admin-demo  admin   unlimited
func Users() []User {
	return []User{
		{Name: "free", Password: "free-demo", Role: "user", Tier: TierFree},
		{Name: "paid", Password: "paid-demo", Role: "user", Tier: TierPaid},
		{Name: "admin", Password: "admin-demo", Role: "admin", Tier: TierAdmin},
	}
}

// LoginRequest is the body of POST /login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is the answer to a successful POST /login.
type LoginResponse struct {
	Token     string `json:"token"`
	TokenType string `json:"token_type"` // "Bearer"
	ExpiresIn int64  `json:"expires_in"` // seconds
	Tier      string `json:"tier"`
}

// auth issues and checks the demo's HS256 tokens.
type auth struct {
	secret []byte
	now    func() time.Time
	users  []User
}

// Token issues the token of user u at now: HS256, with sub, role, tier,
// iat and exp.
func Token(secret []byte, u User, now time.Time) (string, error) {
	claims := jwt.MapClaims{
		"sub":  u.Name,
		"role": u.Role,
		"tier": u.Tier,
		"iat":  now.Unix(),
		"exp":  now.Add(TokenTTL).Unix(),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}

// MaxLoginBody bounds a POST /login body: a name and a password fit in
// far less, and six parallel 100 MB logins used to hold 1.5 GB.
const MaxLoginBody = 4 << 10

// login answers POST /login.
func (a *auth) login(c echo.Context) error {
	var req LoginRequest
	body := http.MaxBytesReader(c.Response(), c.Request().Body, MaxLoginBody)
	if err := json.NewDecoder(body).Decode(&req); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return c.JSON(http.StatusRequestEntityTooLarge, map[string]string{"error": fmt.Sprintf("body larger than %d bytes", MaxLoginBody)})
		}
		return c.JSON(http.StatusBadRequest, map[string]string{"error": "expected JSON {\"username\", \"password\"}"})
	}
	u, ok := a.check(req.Username, req.Password)
	if !ok {
		return c.JSON(http.StatusUnauthorized, map[string]string{"error": "invalid username or password"})
	}
	tok, err := Token(a.secret, u, a.now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, LoginResponse{Token: tok, TokenType: "Bearer", ExpiresIn: int64(TokenTTL / time.Second), Tier: u.Tier})
}

// check finds the user and compares the password in constant time.
func (a *auth) check(name, password string) (User, bool) {
	got := sha256.Sum256([]byte(password))
	for _, u := range a.users {
		want := sha256.Sum256([]byte(u.Password))
		if u.Name == name && subtle.ConstantTimeCompare(got[:], want[:]) == 1 {
			return u, true
		}
	}
	return User{}, false
}

// Order is one line of GET /orders.
type Order struct {
	ID        int `json:"id"`
	ProductID int `json:"product_id"`
	Quantity  int `json:"quantity"`
}

// OrdersResponse is the body of GET /orders.
type OrdersResponse struct {
	User   string  `json:"user"`
	Tier   string  `json:"tier"`
	Orders []Order `json:"orders"`
}

// orders answers GET /orders for the token's subject. The middleware has
// verified the token as the route's key and attached its claims; if a
// policy made the route exempt, the handler verifies it itself.
func orders(key httpapi.KeyFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := c.Request().Context()
		if jwtauth.Claims(ctx) == nil {
			_, kctx, err := key(c.Request())
			if err != nil {
				httpapi.DefaultKeyErrorHandler(c.Response(), c.Request(), err)
				return nil
			}
			if kctx != nil {
				ctx = kctx
			}
		}
		return c.JSON(http.StatusOK, OrdersResponse{
			User:   jwtauth.ClaimString(ctx, "sub"),
			Tier:   jwtauth.ClaimString(ctx, "tier"),
			Orders: []Order{{ID: 1, ProductID: 1, Quantity: 2}, {ID: 2, ProductID: 3, Quantity: 10}},
		})
	}
}
